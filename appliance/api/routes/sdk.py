"""GET /sdk/python and /sdk/typescript: the SDK packages matching this server, for `pip install URL`
and `npm install URL` (sdk_packages.py). No API key: a client library is no secret, and a developer
installs it before having one. Each answers a redirect to the package's own file name, which pip and
npm read the package type from."""

from __future__ import annotations

import asyncio

from litestar import Request, Response, get
from litestar.response import Redirect

from appliance.core import sdk_packages
from appliance.core.errors import NotFound

WHEEL_KEY = "sdk_wheel"


# Downloads, not the JSON API: the OpenAPI schema leaves them out (docs/api.md and docs/sdks.md document them).
@get("/sdk/python", exclude_from_auth=True, include_in_schema=False)
async def python_sdk() -> Redirect:
    return Redirect(f"/sdk/python/{sdk_packages.wheel_name()}", status_code=302)


@get("/sdk/python/{filename:str}", exclude_from_auth=True, include_in_schema=False)
async def python_wheel(request: Request) -> Response[bytes]:
    if request.path_params["filename"] != sdk_packages.wheel_name():
        raise NotFound(f"No such package: this appliance serves {sdk_packages.wheel_name()} (GET /sdk/python).")
    state = request.app.state
    if WHEEL_KEY not in state:  # packed once, off the event loop (it reads a few hundred files)
        state[WHEEL_KEY] = await asyncio.to_thread(sdk_packages.build_wheel)
    return _package(state[WHEEL_KEY])


@get("/sdk/typescript", exclude_from_auth=True, include_in_schema=False)
async def typescript_sdk() -> Redirect:
    return Redirect(f"/sdk/typescript/{sdk_packages.tarball_name()}", status_code=302)


@get("/sdk/typescript/{filename:str}", exclude_from_auth=True, include_in_schema=False)
async def typescript_tarball(request: Request) -> Response[bytes]:
    if request.path_params["filename"] != sdk_packages.tarball_name():
        raise NotFound(f"No such package: this appliance serves {sdk_packages.tarball_name()} (GET /sdk/typescript).")
    package = await asyncio.to_thread(sdk_packages.read_tarball)
    if package is None:
        raise NotFound(
            "The TypeScript SDK was not built on this appliance: its build needs Node.js 18+ and npm where Alveare "
            f"was installed (packaging/run.sh and install.sh make it when they find them), into "
            f"{sdk_packages.tarball_path()}."
        )
    return _package(package)


def _package(package: sdk_packages.Package) -> Response[bytes]:
    return Response(
        content=package.content,
        media_type=package.media_type,
        headers={"content-disposition": f'attachment; filename="{package.filename}"'},
    )


ROUTES = [python_sdk, python_wheel, typescript_sdk, typescript_tarball]
