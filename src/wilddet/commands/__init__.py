"""wilddet.commands"""
