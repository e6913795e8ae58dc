"""ecommerce_ml's local-only code (development data for make start and the tests): never in the image."""
