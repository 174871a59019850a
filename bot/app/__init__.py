"""What Slack commands, buttons and App Home do, without Slack: context, commands, triage, home."""
