#!/bin/sh
# One-shot set-up of MinIO for FertiVision (the `minio-init` service, image minio/mc).
# Idempotent: creates the documents bucket, a policy limited to that bucket, and the access key
# the API and the workers use (not the MinIO root user). The app does not create its bucket.
set -eu

: "${MINIO_ROOT_USER:?}" "${MINIO_ROOT_PASSWORD:?}"
: "${FV_S3_BUCKET:?}" "${FV_S3_ACCESS_KEY:?}" "${FV_S3_SECRET_KEY:?}"

mc alias set local http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null

mc mb --ignore-existing "local/${FV_S3_BUCKET}"
# Uploaded documents are personal health information: never public.
mc anonymous set none "local/${FV_S3_BUCKET}"

cat > /tmp/fertivision-app.json <<EOF
{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::${FV_S3_BUCKET}"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::${FV_S3_BUCKET}/*"]
    }
  ]
}
EOF
mc admin policy create local fertivision-app /tmp/fertivision-app.json

# `user add` on an existing user updates its secret key.
mc admin user add local "$FV_S3_ACCESS_KEY" "$FV_S3_SECRET_KEY"
mc admin policy attach local fertivision-app --user "$FV_S3_ACCESS_KEY" \
  || mc admin user info local "$FV_S3_ACCESS_KEY" | grep -q fertivision-app

echo "minio-init: bucket ${FV_S3_BUCKET} and user ${FV_S3_ACCESS_KEY} ready"
