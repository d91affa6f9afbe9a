"""Simulators of the two peers: OpenAI Realtime (GA) and a Twilio caller. Loopback only."""
