"""The dialogue: turns in, replies out; the turn manager, its tools, agent and prompts."""
