"""Understanding callers: intents, DTMF equivalence, spoken entities, signals, redaction, and the
dialogue (``intents.dialogue``). No audio and no SQL here; nothing imported from ``voice``."""
