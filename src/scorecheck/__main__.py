from scorecheck.cli import entry

entry()
