"""
The dashboard: a page that shows the fleet and a channel's day, and the JSON API it reads.
"""
