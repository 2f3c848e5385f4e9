from aistack.cli.main import main

main()
