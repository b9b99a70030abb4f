module github.com/calm-limiter/calm

go 1.26
