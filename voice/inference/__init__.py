"""The inference tier: one process per host (`ivr inference`) owns the ASR, TTS and embedding
models and serves every worker on the host over gRPC; workers reach it through
``client.RemoteEngines`` when ``models.inference_url`` is set."""
