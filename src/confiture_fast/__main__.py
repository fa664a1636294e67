from confiture_fast.cli import main

main()
