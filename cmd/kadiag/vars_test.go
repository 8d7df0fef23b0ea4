package main

import "sync"

var (
	kadiagOnce sync.Once
	kadiagBin  string
	kadiagErr  error
)
