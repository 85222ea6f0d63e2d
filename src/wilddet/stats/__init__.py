"""wilddet.stats"""
