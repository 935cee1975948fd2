from wildix_ast.cli import main

main()
