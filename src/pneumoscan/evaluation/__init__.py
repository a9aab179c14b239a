"""pneumoscan.evaluation"""
