"""The local AWS for tests: moto (PyPI) in server mode on 127.0.0.1, plus what moto leaves out.

Started by e2e/k8s/aws/local-aws.ts, never by the global setup. Reads a JSON config from argv[1]:
  {"port": 0, "account": "123456789012", "clusters": [{"name", "region", "endpoint", "caPem",
   "publicAccess"}], "users": ["periscope-server", ...], "roles": ["irsa", ...],
   "deny": ["<user name>"], "expired": ["<user name>"]}
and prints one JSON line on stdout once it serves: {"port", "users": {name: {accessKeyId,
secretAccessKey, arn}}, "roles": {name: arn}}.

What is emulated beyond moto itself (moto verifies no signatures):
- STS GetCallerIdentity by a presigned URL (what an EKS token is) verifies the SigV4 query
  signature against the secret moto issued, the signed `x-k8s-aws-id` header and the expiry, and
  answers 403 SignatureDoesNotMatch / ExpiredToken as STS does.
- EKS clusters get the endpoint and CA given here (the local kube-apiserver's).
- Users named in "deny" get AccessDeniedException from EKS; in "expired" ExpiredTokenException
  (an IAM policy and an expired session, which moto does not evaluate).
"""

import datetime
import hashlib
import hmac
import json
import sys
import urllib.parse

import boto3
from moto.backends import get_backend
from werkzeug.serving import make_server
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app


def secret_for(account: str, access_key: str):
    sts = get_backend("sts")[account]["global"]
    role = sts.get_assumed_role_from_access_key(access_key)
    if role is not None:
        return role.secret_access_key, role.expiration
    iam = get_backend("iam")[account]["global"]
    for user_name in list(iam.users):
        for key in iam.list_access_keys(user_name):
            if key.access_key_id == access_key:
                return key.secret_access_key, None
    return None, None


def enc(s: str) -> str:
    return urllib.parse.quote(s, safe="-_.~")


def verify_presigned(environ, account: str):
    """None when the presigned request is valid, else (status, code, message)."""
    q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
    one = {k: v[0] for k, v in q.items()}
    cred = one.get("X-Amz-Credential", "")
    parts = cred.split("/")
    if len(parts) != 5:
        return (403, "IncompleteSignature", "X-Amz-Credential is malformed")
    access_key, day, region, service, _ = parts
    secret, expiration = secret_for(account, access_key)
    if secret is None:
        return (403, "InvalidClientTokenId", "The security token included in the request is invalid.")
    amz_date = one.get("X-Amz-Date", "")
    signed_at = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
    now = datetime.datetime.now(datetime.timezone.utc)
    if now > signed_at + datetime.timedelta(seconds=int(one.get("X-Amz-Expires", "0"))):
        return (403, "ExpiredToken", "Request has expired")
    if expiration is not None and now > expiration.replace(tzinfo=datetime.timezone.utc):
        return (403, "ExpiredToken", "The security token included in the request is expired")
    signed_headers = one.get("X-Amz-SignedHeaders", "").split(";")
    headers = []
    for h in signed_headers:
        v = environ.get("HTTP_" + h.upper().replace("-", "_"), "")
        headers.append(f"{h}:{v.strip()}\n")
    query = "&".join(
        f"{enc(k)}={enc(v)}" for k, v in sorted((k, v) for k, vs in q.items() for v in vs if k != "X-Amz-Signature")
    )
    canonical = "\n".join(
        ["GET", environ.get("PATH_INFO") or "/", query, "".join(headers), ";".join(signed_headers), hashlib.sha256(b"").hexdigest()]
    )
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + secret).encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    want = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, one.get("X-Amz-Signature", "")):
        return (403, "SignatureDoesNotMatch", "The request signature we calculated does not match the signature you provided.")
    environ["HTTP_AUTHORIZATION"] = (
        f"AWS4-HMAC-SHA256 Credential={cred}, SignedHeaders={one.get('X-Amz-SignedHeaders')}, Signature={want}"
    )
    return None


def sts_error(start_response, status, code, message):
    body = (
        f'<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/"><Error><Type>Sender</Type>'
        f"<Code>{code}</Code><Message>{message}</Message></Error><RequestId>local</RequestId></ErrorResponse>"
    ).encode()
    start_response(f"{status} Error", [("Content-Type", "text/xml"), ("Content-Length", str(len(body)))])
    return [body]


def main() -> None:
    cfg = json.loads(sys.argv[1])
    account = cfg.get("account", "123456789012")
    deny_keys, expired_keys = set(), set()
    app = DomainDispatcherApplication(create_backend_app)

    def wrapped(environ, start_response):
        qs = environ.get("QUERY_STRING", "")
        if environ.get("REQUEST_METHOD") == "GET" and "X-Amz-Signature=" in qs and "Action=GetCallerIdentity" in qs:
            bad = verify_presigned(environ, account)
            if bad is not None:
                return sts_error(start_response, *bad)
        auth = environ.get("HTTP_AUTHORIZATION", "")
        key = auth.split("Credential=")[1].split("/")[0] if "Credential=" in auth else ""
        if "/eks/aws4_request" in auth and key in deny_keys:
            body = json.dumps({"message": f"User is not authorized to perform: eks:DescribeCluster"}).encode()
            start_response("403 Forbidden", [("Content-Type", "application/json"), ("x-amzn-ErrorType", "AccessDeniedException")])
            return [body]
        if key in expired_keys:
            body = json.dumps({"message": "The security token included in the request is expired"}).encode()
            start_response("403 Forbidden", [("Content-Type", "application/json"), ("x-amzn-ErrorType", "ExpiredTokenException")])
            return [body]
        return app(environ, start_response)

    server = make_server("127.0.0.1", int(cfg.get("port", 0)), wrapped, threaded=True)
    port = server.server_port
    endpoint = f"http://127.0.0.1:{port}"
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()

    kw = dict(endpoint_url=endpoint, aws_access_key_id="seed", aws_secret_access_key="seed")
    iam = boto3.client("iam", region_name="us-east-1", **kw)
    out = {"port": port, "users": {}, "roles": {}}
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": ["sts:AssumeRole", "sts:AssumeRoleWithWebIdentity", "sts:TagSession"]}]})
    for name in cfg.get("users", []):
        arn = iam.create_user(UserName=name)["User"]["Arn"]
        k = iam.create_access_key(UserName=name)["AccessKey"]
        out["users"][name] = {"accessKeyId": k["AccessKeyId"], "secretAccessKey": k["SecretAccessKey"], "arn": arn}
        if name in cfg.get("deny", []):
            deny_keys.add(k["AccessKeyId"])
        if name in cfg.get("expired", []):
            expired_keys.add(k["AccessKeyId"])
    for name in cfg.get("roles", []):
        out["roles"][name] = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)["Role"]["Arn"]
    for c in cfg.get("clusters", []):
        eks = boto3.client("eks", region_name=c["region"], **kw)
        eks.create_cluster(
            name=c["name"],
            roleArn=f"arn:aws:iam::{account}:role/eks-cluster",
            resourcesVpcConfig={"subnetIds": [], "endpointPublicAccess": c.get("publicAccess", True), "endpointPrivateAccess": True},
        )
        model = get_backend("eks")[account][c["region"]].clusters[c["name"]]
        model.endpoint = c["endpoint"]
        model.certificate_authority = {"data": __import__("base64").b64encode(c["caPem"].encode()).decode()}
        model.resources_vpc_config = {**model.resources_vpc_config, "endpointPublicAccess": c.get("publicAccess", True), "endpointPrivateAccess": True}
    print(json.dumps(out), flush=True)
    # Serve until stdin closes (the test process ended) or a signal.
    try:
        sys.stdin.read()
    finally:
        server.shutdown()


if __name__ == "__main__":
    main()
