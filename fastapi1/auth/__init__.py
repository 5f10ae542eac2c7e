"""Authentication: GOV.UK Notify's tokens, the API keys that sign them, and who is calling."""
