"""The command line's exit codes, one place for every command (README, "Commands")."""

EXIT_CONFIG = 2  # invalid config (or a query that does not parse)
EXIT_DATABASE = 3  # unusable database
EXIT_SLACK_AUTH = 4  # Slack rejected the token
