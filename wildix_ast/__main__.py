"""`python -m wildix_ast`: the wildix-ast command."""

from wildix_ast.cli.main import main

main()
