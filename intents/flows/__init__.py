"""Versioned flow bundles (menu, prompts, tool schema, thresholds, model choices) and the spoken
cohorts that gate their promotion."""
