package jwtverify

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// ParsePublicKeyPEM parses the first PEM block of data as a PKIX public key
// ("PUBLIC KEY"), a PKCS #1 RSA public key ("RSA PUBLIC KEY") or a
// certificate, and returns an *rsa.PublicKey, *ecdsa.PublicKey or
// ed25519.PublicKey.
func ParsePublicKeyPEM(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("jwtverify: no PEM block found: want a PUBLIC KEY or CERTIFICATE block")
	}
	var (
		pub crypto.PublicKey
		err error
	)
	switch block.Type {
	case "PUBLIC KEY":
		pub, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			pub = cert.PublicKey
		}
	default:
		return nil, fmt.Errorf("jwtverify: PEM block %q is not a public key: want PUBLIC KEY "+
			"or CERTIFICATE (never pass a private key)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("jwtverify: parsing %s: %w", block.Type, err)
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, fmt.Errorf("jwtverify: %w", err)
	}
	return pub, nil
}
