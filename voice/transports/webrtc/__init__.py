"""Browser calls over WebRTC (aiortc): the call line, signalling, call tokens."""
