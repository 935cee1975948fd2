from wildix_ast.cli.main import main

main()
