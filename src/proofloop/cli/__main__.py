from proofloop.cli import main

main()
