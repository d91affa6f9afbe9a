"""ProSaaS phone voice agent: Twilio Media Streams <-> OpenAI Realtime (GA)."""
__version__ = "0.1.0"
