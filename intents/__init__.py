"""Intent detection, DTMF equivalence, entity normalization and caller signals (not yet built)."""
