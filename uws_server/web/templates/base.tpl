<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{title}} · uws-server</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/ui/static/style.css">
<script src="/ui/static/app.js" defer></script>
<script src="/ui/static/provgraph.js" defer></script>
</head>
<body data-page="{{page}}" data-csrf="{{ctx.csrf if ctx else ''}}">
<header class="top">
  <a class="brand" href="/ui/">uws-server</a>
% if ctx:
  <nav>
    <a href="/ui/" class="{{'on' if page == 'home' else ''}}">Run a job</a>
    <a href="/ui/find" class="{{'on' if page == 'find' else ''}}" id="nav-find">Find data</a>
    <a href="/ui/jobs" class="{{'on' if page in ('jobs', 'job') else ''}}">My jobs</a>
%   if ctx.is_operator:
    <a href="/ui/jdl" class="{{'on' if page in ('jdl', 'editor', 'history') else ''}}">Job definitions</a>
%   end
%   if ctx.user.is_admin:
    <a href="/ui/admin" class="{{'on' if page == 'admin' else ''}}">Admin</a>
%   end
  </nav>
  <div class="who">
    <span class="user" id="current-user">{{ctx.user.name}}</span>
%   if ctx.session:
    <form method="post" action="/ui/logout" class="inline">
      <input type="hidden" name="_csrf" value="{{ctx.csrf}}">
      <button type="submit" class="linkish" id="sign-out">Sign out</button>
    </form>
%   end
  </div>
% end
</header>
<main>
% if message:
<p class="flash" id="flash">{{message}}</p>
% end
{{!base}}
</main>
<footer>IVOA UWS 1.1 job service · <a href="/rest">REST API</a> · <a href="/jdl">job definitions (JSON)</a></footer>
</body>
</html>
