"""The `ember` command (main.py) and one module per subcommand: compile, run, bench, inspect,
doctor, demo. Each module has NAME, HELP, add_arguments and run.
"""
