"""wilddet.evaluation"""
