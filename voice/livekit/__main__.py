"""``python -m voice.livekit start|dev|...``: the LiveKit Agents worker (livekit-agents' CLI)."""

from voice.livekit.worker import main

main()
