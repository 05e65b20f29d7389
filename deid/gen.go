package deid

//go:generate go run ./internal/gen -in internal/gen/table-e1-1.txt -out zprofile.go
