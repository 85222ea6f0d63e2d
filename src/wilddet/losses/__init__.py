"""wilddet.losses"""
