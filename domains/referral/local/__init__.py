"""referral's local-only code (stand-ins of the services it calls, sample data for make start and the tests): never in the image."""
