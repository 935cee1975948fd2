"""The mail sender service: SMTP sessions through the stored profiles (`smtp`) and the
sender that empties the mail queue with retries and back-off (`sender`)."""
