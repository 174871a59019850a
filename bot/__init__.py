"""newsalert: a Slack bot that watches the news for trust-and-safety teams (see README.md)."""
