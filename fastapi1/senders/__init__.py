"""A service's senders: the names or numbers its text messages come from, the addresses its e-mails' replies go to."""
