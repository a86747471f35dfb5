from plainrl.cli import main

main()
