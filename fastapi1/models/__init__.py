"""ORM tables, one module per aggregate; importing this package registers them all."""

from fastapi1.models.additions import AddBatch, AddPair, AddSum
from fastapi1.models.callbacks import DeliveryReceipt, ServiceCallback
from fastapi1.models.keys import ApiKey, GuestListRecipient
from fastapi1.models.limits import RateLimitWindow, ServiceDailyCount
from fastapi1.models.notifications import Notification, NotificationPersonalization
from fastapi1.models.predictions import Prediction, PredictionAgent
from fastapi1.models.services import EmailReplyTo, Service, SmsSender, Template, TemplateVersion

__all__ = [
    "AddBatch",
    "AddPair",
    "AddSum",
    "ApiKey",
    "DeliveryReceipt",
    "EmailReplyTo",
    "GuestListRecipient",
    "Notification",
    "NotificationPersonalization",
    "Prediction",
    "PredictionAgent",
    "RateLimitWindow",
    "Service",
    "ServiceCallback",
    "ServiceDailyCount",
    "SmsSender",
    "Template",
    "TemplateVersion",
]
