"""Loopback fakes of the venues and services openbell talks to, and the helpers several test folders share."""
