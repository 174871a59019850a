"""The Slack app: Bolt for Python at the edge of newsalert.

Listeners are thin: they ack, call the core (bot.commands, bot.triage, bot.home) and send back
what it says. Nothing outside this package imports slack_bolt.

    app.py        create_app (the Bolt App), serve_http (POST /slack/events, /healthz, /metrics),
                  run_socket_mode
    workspace.py  SlackWorkspace: what the core asks Slack (admins, channel membership, permalinks)
    listeners/    commands (/newsalert), actions (alert buttons), events (app_home_opened), views
"""
