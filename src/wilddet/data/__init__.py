"""wilddet.data"""
