"""The voice path of the IVR: transports, audio, VAD, end-of-turn, ASR, TTS, the pipeline."""
