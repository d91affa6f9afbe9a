"""The web face of the server: the admin pages and their session, request limits, Twilio's signatures."""
