"""GOV.UK Notify's public API (``/v2``), over the same controllers and DAO as ``/notifications/v1``."""
