module github.com/calm-limiter/calm

go 1.26.0

require (
	github.com/golang-jwt/jwt/v5 v5.3.1
	github.com/redis/rueidis v1.0.80
	go.yaml.in/yaml/v3 v3.0.6
)

require golang.org/x/sys v0.50.0 // indirect
