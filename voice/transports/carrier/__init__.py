"""Calls that a telephony provider streams over a WebSocket (Twilio Media Streams)."""
