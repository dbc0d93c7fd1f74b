from outreach.cli import main

main()
