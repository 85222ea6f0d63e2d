"""wilddet.sampling"""
