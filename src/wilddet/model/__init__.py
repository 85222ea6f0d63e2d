"""wilddet.model"""
