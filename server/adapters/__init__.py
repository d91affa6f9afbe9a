"""The outside services as the server speaks to them: OpenAI Realtime's socket, Twilio's REST API and its TwiML."""
