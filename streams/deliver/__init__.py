"""Delivery of pushes and digests to the bank's messaging (webhooks, WeCom and DingTalk robots)."""
