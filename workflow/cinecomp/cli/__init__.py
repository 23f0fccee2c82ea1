"""The `cinecomp` command: a thin dispatcher (:mod:`.main`, argument parsing only), one module per subcommand with a ``run(args[, extra])``, and :mod:`.common` (config and targets they share). Subcommands import common and the library, never the dispatcher; nothing in the library imports cli.

May import: everything below it.
"""
