"""Notification worker: SQS events in, SES v2 emails out, each event sent once."""
