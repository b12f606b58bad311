"""The `ember` command (main.py) and one module per subcommand: compile, check, run, bench,
inspect, sign, doctor, demo. Each module has NAME, HELP, add_arguments and run. Beside them:
signals.py (Ctrl-C and SIGTERM during long native work) and prompt.py (`run --prompt`).
"""
