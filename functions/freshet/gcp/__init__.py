"""One thin adapter per Google service; nothing else imports google.cloud."""
